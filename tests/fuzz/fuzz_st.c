// libFuzzer harness: st_read on arbitrary bytes (formats.c), through a file (st_read reads a path).
#include "r1.h"
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/r1_fuzz_st_%ld.safetensors", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    StFile st;
    char err[R1_ERR_LEN];
    if (st_read(path, &st, err) == 0) {
        for (int i = 0; i < st.n; i++)  // every accepted range lies in the data section
            if (st.t[i].begin > st.t[i].end || st.t[i].end > st.data_size) abort();
        if (st.n) (void)st_find(&st, st.t[0].name);
        st_free(&st);
    }
    return 0;
}
