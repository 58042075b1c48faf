/* Minimal C test harness for afut's C suite.
 *
 * Each c-tests/<name>.c is one program. It defines test functions with TEST(),
 * lists them in main() with RUN(), and ends with TEST_END(), which prints the
 * closing "N passed, N failed" line and returns non-zero on any failure.
 * CHECK() records a failure (file:line and the expression) and carries on, so a
 * single run reports every broken assertion. */
#ifndef AFUT_TEST_H
#define AFUT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed_;
static int test_failed_;
static int test_current_failures_;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            test_current_failures_++;                                            \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                       \
    do {                                                                         \
        long long a_ = (long long)(a), b_ = (long long)(b);                      \
        if (a_ != b_) {                                                          \
            test_current_failures_++;                                            \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n",        \
                    __FILE__, __LINE__, #a, a_, #b, b_);                         \
        }                                                                        \
    } while (0)

#define CHECK_STR(a, b)                                                          \
    do {                                                                         \
        const char *a_ = (a), *b_ = (b);                                         \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                 \
            test_current_failures_++;                                            \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n",          \
                    __FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
        }                                                                        \
    } while (0)

#define RUN(name)                                                                \
    do {                                                                         \
        test_current_failures_ = 0;                                              \
        name();                                                                  \
        if (test_current_failures_) {                                            \
            test_failed_++;                                                      \
            printf("FAIL %s\n", #name);                                          \
        } else {                                                                 \
            test_passed_++;                                                      \
            printf("ok   %s\n", #name);                                          \
        }                                                                        \
        fflush(stdout);                                                          \
    } while (0)

#define TEST_END()                                                               \
    do {                                                                         \
        printf("%d passed, %d failed\n", test_passed_, test_failed_);            \
        return test_failed_ ? 1 : 0;                                             \
    } while (0)

#endif
