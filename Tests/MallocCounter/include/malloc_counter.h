#ifndef MALLOC_COUNTER_H
#define MALLOC_COUNTER_H
// Counts heap allocations made by the calling thread between start and stop. Linked into a test
// executable, its malloc family takes the place of libc's for the whole process (the Swift runtime
// and OpenBLAS included) and forwards to glibc's own __libc_* functions.
void malloc_counter_start(void);
long malloc_counter_stop(void);
#endif
