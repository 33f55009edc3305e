// libFuzzer harness: json_parse on arbitrary bytes (formats.c). `make fuzz` builds and runs it.
#include "r1.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[R1_ERR_LEN];
    Json *j = json_parse((const char *)data, size, err);
    if (j) {  // and what it parsed can be walked and written back
        FILE *f = fopen("/dev/null", "w");
        if (f && j->type == JSON_STRING) json_write_string(f, j->string);
        if (f) fclose(f);
        if (j->type == JSON_OBJECT && j->n > 0) (void)json_get(j, j->keys[0]);
    }
    json_free(j);
    return 0;
}
