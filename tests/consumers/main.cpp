// The C++ twin of main.c: proves that afut.h links from C++ (extern "C") as well
// as compiling there. Prints "consumer ok <version>" like main.c.
#include <afut.h>

#include <cstdio>
#include <cstring>

namespace {

int answer = 42;

extern "C" void set_answer(void *fut) {
    afut_set_result(static_cast<afut_t *>(fut), &answer, nullptr);
}

}  // namespace

int main() {
    if (std::strcmp(afut_version(), AFUT_VERSION_STRING) != 0) {
        std::fprintf(stderr, "consumer: header %s, library %s\n", AFUT_VERSION_STRING, afut_version());
        return 1;
    }
    afut_loop_t *loop = afut_loop_new();
    if (loop == nullptr)
        return 1;
    bool ok = false;
    afut_t *fut = afut_loop_create_future(loop);
    if (fut != nullptr && afut_loop_call_soon(loop, set_answer, fut, nullptr) != 0) {
        void *value = nullptr;
        afut_status_t rc = afut_loop_run_until_complete(loop, fut);
        ok = rc == AFUT_OK && afut_result(fut, &value) == AFUT_OK && value == &answer;
        if (!ok)
            std::fprintf(stderr, "consumer: run_until_complete: %s\n", afut_status_str(rc));
    }
    afut_unref(fut);
    afut_loop_free(loop);
    if (!ok)
        return 1;
    std::printf("consumer ok %s\n", afut_version());
    return 0;
}
