#include <mpi.h>
// Open MPI's handles are cast macros that Swift cannot import; these getters expose them.
static inline MPI_Comm cmpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype cmpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype cmpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype cmpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype cmpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Op cmpi_sum(void) { return MPI_SUM; }
static inline MPI_Op cmpi_max(void) { return MPI_MAX; }
static inline MPI_Op cmpi_min(void) { return MPI_MIN; }
static inline void *cmpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request cmpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *cmpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler cmpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int cmpi_success(void) { return MPI_SUCCESS; }
static inline int cmpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int cmpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int cmpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline MPI_Info cmpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Win cmpi_win_null(void) { return MPI_WIN_NULL; }
static inline int cmpi_mode_nocheck(void) { return MPI_MODE_NOCHECK; }

// bfloat16 on the wire (--grad-wire bf16): a 2-byte datatype and a sum that adds in FP32 and
// rounds to nearest even, created once per process.
static inline float cmpi_bf16_to_f32(unsigned short h) {
    union { unsigned int u; float f; } v;
    v.u = (unsigned int)h << 16;
    return v.f;
}
static inline unsigned short cmpi_f32_to_bf16(float x) {
    union { unsigned int u; float f; } v;
    v.f = x;
    if ((v.u & 0x7f800000u) == 0x7f800000u) return (unsigned short)((v.u >> 16) | ((v.u & 0xffffu) ? 0x40u : 0));  // inf, NaN stays NaN
    return (unsigned short)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static void cmpi_bf16_sum_function(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const unsigned short *a = (const unsigned short *)in;
    unsigned short *b = (unsigned short *)inout;
    for (int i = 0; i < *len; i++) b[i] = cmpi_f32_to_bf16(cmpi_bf16_to_f32(a[i]) + cmpi_bf16_to_f32(b[i]));
}
static inline MPI_Datatype cmpi_bf16(void) {
    static MPI_Datatype type = MPI_DATATYPE_NULL;
    if (type == MPI_DATATYPE_NULL) {
        MPI_Type_contiguous(2, MPI_BYTE, &type);
        MPI_Type_commit(&type);
    }
    return type;
}
static inline MPI_Op cmpi_bf16_sum(void) {
    static MPI_Op op = MPI_OP_NULL;
    if (op == MPI_OP_NULL) MPI_Op_create(cmpi_bf16_sum_function, 1, &op);
    return op;
}
