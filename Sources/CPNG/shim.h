// libpng for the Data module's PNG decoder and encoder (ImageFile.swift). Only libpng's simplified API
// (png_image_*) is used: it reports errors in png_image.message instead of longjmp-ing out of the
// caller, which Swift could not survive, so no C helper is needed here (compare CJPEG/shim.h).
#include <png.h>
