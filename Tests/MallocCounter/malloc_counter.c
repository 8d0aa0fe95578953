#include "malloc_counter.h"
#include <errno.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#include <execinfo.h>
#include <stdlib.h>
#include <unistd.h>

static __thread int counting = 0;
static __thread long count = 0;
static __thread int tracing = 0;

// MALLOC_COUNTER_TRACE=N prints the stack of the first N counted allocations, to find them.
static void note(void) {
    if (!counting) return;
    count++;
    if (tracing) return;
    static long limit = -1;
    if (limit < 0) { const char *e = getenv("MALLOC_COUNTER_TRACE"); limit = e ? atol(e) : 0; }
    if (count > limit) return;
    tracing = 1;
    void *frames[24];
    int n = backtrace(frames, 24);
    backtrace_symbols_fd(frames, n, 2);
    write(2, "----\n", 5);
    tracing = 0;
}

void malloc_counter_start(void) { count = 0; counting = 1; }
long malloc_counter_stop(void) { counting = 0; return count; }

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t k, size_t n) { note(); return __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { note(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { note(); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    note();
    void *p = __libc_memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p) { __libc_free(p); }
