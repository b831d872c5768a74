# cmake -DINPUT=file -DOUTPUT=file.cpp -DSYMBOL=name -P embed_file.cmake: the file's bytes as a C++ array, so the
# binary serves its page offline with nothing beside it.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){32})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}" "// Generated from ${INPUT} by embed_file.cmake.\n#include \"serve/page.h\"\n\n"
     "namespace effcam::serve {\n\nconst unsigned char ${SYMBOL}[] = {\n${bytes}0};\n"
     "const size_t ${SYMBOL}Size = ${size};\n\n}  // namespace effcam::serve\n")
