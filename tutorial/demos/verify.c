// verify.c: runs tasks.c's exact verifier on answers. usage: verify EXAMPLE_JSON ANSWER...
#include "r1.h"
#include <string.h>

int main(int argc, char **argv) {
    char err[R1_ERR_LEN];
    Json *ex = argc > 1 ? json_parse(argv[1], strlen(argv[1]), err) : NULL;
    if (!ex) {
        fprintf(stderr, "usage: verify EXAMPLE_JSON ANSWER...\n");
        return 1;
    }
    for (int i = 2; i < argc; i++) printf("%d  %s\n", task_check(NULL, ex, argv[i]), argv[i]);
    json_free(ex);
    return 0;
}
