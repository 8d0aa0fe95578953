// libjpeg behind two calls Swift can make. libjpeg reports a fatal error by calling error_exit, which
// must not return; the only way out is longjmp, and Swift can neither call setjmp nor be jumped over,
// so each call below does its setjmp here in C and returns an error code and libjpeg's message instead.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

/// More scans than any real progressive file has (they have about 10). Each scan of a progressive
/// file is a pass over the whole image, so a small hostile file with thousands of scans would take
/// minutes; libjpeg-turbo's own fuzzers stop at 500 too.
#define CJPEG_MAX_SCANS 500

/// libjpeg's working memory cap (coefficient buffers of progressive files); past it libjpeg fails with
/// "Backing store not supported" instead of allocating.
#define CJPEG_MAX_MEMORY (512L << 20)

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} cjpeg_error_mgr;

static inline void cjpeg_error_exit(j_common_ptr cinfo) {
    cjpeg_error_mgr *err = (cjpeg_error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/// Warnings are not printed. libjpeg only warns when the data ends early (it pads with an end-of-image
/// marker and returns gray rows), so that one is an error here, as it is in PIL; the warnings about
/// corrupt entropy-coded data it recovers from are ignored, as PIL ignores them.
static inline void cjpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) cjpeg_error_exit(cinfo);
}

static inline void cjpeg_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > CJPEG_MAX_SCANS) {
        cjpeg_error_mgr *err = (cjpeg_error_mgr *)cinfo->err;
        snprintf(err->message, sizeof err->message, "more than %d scans", CJPEG_MAX_SCANS);
        longjmp(err->jump, 1);
    }
}

static inline void cjpeg_install_errors(cjpeg_error_mgr *err) {
    jpeg_std_error(&err->pub);
    err->pub.error_exit = cjpeg_error_exit;
    err->pub.emit_message = cjpeg_emit_message;
    err->message[0] = 0;
}

/// Decodes a JPEG to 8-bit interleaved samples: grayscale files to 1 channel, YCbCr and RGB files to 3
/// (RGB). On success returns 0 and sets *pixels to a malloc'd buffer of width*height*channels bytes
/// (free it with cjpeg_free). Returns 1 with libjpeg's message in `message` for corrupt or truncated
/// data, 2 for a color space other than gray/YCbCr/RGB (CMYK, YCCK), 3 when width*height*max(channels,
/// out_channels) exceeds max_samples (checked on the header, before anything large is allocated; the
/// caller passes the channel count it will convert to as out_channels, 0 for none).
static inline int cjpeg_decode(const unsigned char *data, unsigned long size, unsigned long max_samples,
                               int out_channels, unsigned char **pixels, int *width, int *height, int *channels,
                               char *message, size_t message_size) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    cjpeg_error_mgr err;
    unsigned char *volatile buffer = NULL;
    *pixels = NULL;
    message[0] = 0;
    cjpeg_install_errors(&err);
    cinfo.err = &err.pub;
    if (setjmp(err.jump)) {
        snprintf(message, message_size, "%s", err.message);
        free(buffer);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = CJPEG_MAX_MEMORY;
    progress.progress_monitor = cjpeg_progress;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_GRAYSCALE && cinfo.num_components == 1) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if ((cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_RGB) && cinfo.num_components == 3) {
        cinfo.out_color_space = JCS_RGB;
    } else {
        const char *name = cinfo.jpeg_color_space == JCS_CMYK ? "CMYK"
                         : cinfo.jpeg_color_space == JCS_YCCK ? "YCCK" : "unknown";
        snprintf(message, message_size, "%s color space with %d components", name, cinfo.num_components);
        jpeg_destroy_decompress(&cinfo);
        return 2;
    }
    int n = cinfo.out_color_space == JCS_GRAYSCALE ? 1 : 3;
    unsigned long long samples = (unsigned long long)cinfo.image_width * cinfo.image_height
                               * (unsigned)(out_channels > n ? out_channels : n);
    if (samples > max_samples) {
        snprintf(message, message_size, "%ux%u", cinfo.image_width, cinfo.image_height);
        *width = (int)cinfo.image_width;
        *height = (int)cinfo.image_height;
        *channels = n;
        jpeg_destroy_decompress(&cinfo);
        return 3;
    }
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * cinfo.output_components;
    buffer = (unsigned char *)malloc(stride * cinfo.output_height + 1);
    if (buffer == NULL) ERREXIT1(&cinfo, JERR_OUT_OF_MEMORY, 0);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = buffer + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    *width = (int)cinfo.output_width;
    *height = (int)cinfo.output_height;
    *channels = cinfo.output_components;
    *pixels = buffer;
    // No jpeg_finish_decompress: every row is read, and what follows (trailing markers, a missing
    // end-of-image marker) cannot change the pixels.
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/// Encodes 8-bit interleaved gray (channels 1) or RGB (channels 3) as a baseline JPEG at `quality`
/// (1...100). Chroma is subsampled 2x2 below quality 90 and kept at full resolution from 90 up (as
/// ImageMagick does), so high qualities round-trip colors closely. On success returns 0 and sets
/// *out / *out_size to a malloc'd buffer (free it with cjpeg_free); on failure returns 1 with
/// libjpeg's message.
static inline int cjpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                               unsigned char **out, unsigned long *out_size, char *message, size_t message_size) {
    struct jpeg_compress_struct cinfo;
    cjpeg_error_mgr err;
    *out = NULL;
    *out_size = 0;
    message[0] = 0;
    cjpeg_install_errors(&err);
    cinfo.err = &err.pub;
    // jpeg_mem_dest grows its buffer through these two pointers, which point into the caller's memory,
    // so they still hold the buffer after a longjmp (a local here would be indeterminate).
    if (setjmp(err.jump)) {
        snprintf(message, message_size, "%s", err.message);
        jpeg_destroy_compress(&cinfo);
        free(*out);
        *out = NULL;
        *out_size = 0;
        return 1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, out, out_size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (channels == 3 && quality >= 90) {
        cinfo.comp_info[0].h_samp_factor = 1;
        cinfo.comp_info[0].v_samp_factor = 1;
    }
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + stride * cinfo.next_scanline);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 0;
}

/// Frees a buffer returned by cjpeg_decode or cjpeg_encode.
static inline void cjpeg_free(void *p) { free(p); }
