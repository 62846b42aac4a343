/* Unit tests for base/random.h: ids are not repeated, not even by a
 * forked process (the workers fork from a master that has made ids). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/gw.h"
#include "base/random.h"

static void test_ids_differ(void **state) {
    (void)state;
    char a[32], b[32];
    assert_int_equal(gw_random_hex(a), GW_OK);
    assert_int_equal(gw_random_hex(b), GW_OK);
    assert_memory_not_equal(a, b, 32);
    for (int i = 0; i < 32; i++) assert_non_null(strchr("0123456789abcdef", a[i]));
}

/* The parent has drawn from its pool; a child forked now, and the parent
 * after it, must not both hand out the next id of that pool. */
static void test_forked_child_draws_its_own(void **state) {
    (void)state;
    char first[32], parent_next[32], child_next[32];
    assert_int_equal(gw_random_hex(first), GW_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[32];
        int ok = gw_random_hex(id) == GW_OK && write(fds[1], id, 32) == 32;
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], child_next, 32), 32);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(gw_random_hex(parent_next), GW_OK);
    assert_memory_not_equal(parent_next, child_next, 32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_differ),
        cmocka_unit_test(test_forked_child_draws_its_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
