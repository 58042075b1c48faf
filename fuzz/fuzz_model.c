/* libFuzzer target for afut.
 *
 * It decodes the input bytes into the same random API call sequences as the model test
 * (c-tests/test_model.c, included below: one engine, one reference model) and checks the
 * same invariants after every step: states, results, the exact order callbacks ran,
 * userdata/value/detail frees, never-retrieved reports. A violation prints the step and
 * aborts, which libFuzzer records as a crash (the input is saved as crash-<sha1>).
 *
 * Build and run: fuzz/run.sh [seconds]. Without clang/libFuzzer, the same file builds with
 * gcc and -DAFUT_FUZZ_STANDALONE into a replay driver: `fuzz_model FILE|DIR...` runs each
 * input once (use it to replay a crash, or the corpus, under valgrind).
 *
 * Each byte is one choice of the generator (two bytes for choices wider than 256); when the
 * bytes run out the sequence ends and everything is released and checked (teardown). */
#define AFUT_MODEL_NO_MAIN
#include "../c-tests/test_model.c"

#include <dirent.h>
#include <sys/stat.h>

/* Upper bound of API calls per input, so that one input stays fast. */
#define FUZZ_MAX_CALLS 20000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const uint8_t empty = 0;
    g_fuzz_mode = true;
    model_reset(0, size ? data : &empty, size);
    g_calls = 0;
    new_loop();
    while (!g_exhausted && g_calls < FUZZ_MAX_CALLS) step();
    teardown();
    return 0;
}

#ifdef AFUT_FUZZ_STANDALONE
static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    int inputs = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') continue;
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
                if (run_file(path)) return 1;
                inputs++;
            }
            if (d) closedir(d);
        } else {
            if (run_file(argv[i])) return 1;
            inputs++;
        }
    }
    printf("replayed %d inputs, no violation\n", inputs);
    return 0;
}
#endif
