// libFuzzer harness: config_from_json on arbitrary text (formats.c); an accepted config must
// validate and have sizes model_create can check without overflow.
#include "r1.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1), err[R1_ERR_LEN];
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    Config c;
    if (config_from_json(text, &c, err) == 0) {
        if (config_validate(&c, err) != 0) abort();  // accepted means valid
        ParamCount pc;
        count_params(&c, &pc);
    }
    free(text);
    return 0;
}
