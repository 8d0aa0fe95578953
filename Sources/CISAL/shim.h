// Intel's ISA-L (Debian's libisal-dev), for CRC-32C: TensorBoard's record framing checksums each
// record with it. crc32_iscsi(buf, len, ~0) ^ ~0 is the standard CRC-32C ("123456789" -> e3069283).
#include <isa-l/crc.h>
