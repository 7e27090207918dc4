/*
 * fuzz_check.h: the one assertion the harnesses share.  A property that does
 * not hold is reported like a crash: the line and the condition on stderr,
 * then __builtin_trap(), which libFuzzer catches and saves the input for.
 * (assert() would vanish under NDEBUG, and abort() from a check reads like a
 * harness failure in a sanitizer report.)
 */
#ifndef TETHER_FUZZ_CHECK_H
#define TETHER_FUZZ_CHECK_H

#include <stdio.h>

#define FUZZ_CHECK(condition)                                                            \
	do {                                                                             \
		if (!(condition)) {                                                      \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#condition);                                             \
			__builtin_trap();                                                \
		}                                                                        \
	} while (0)

#endif /* TETHER_FUZZ_CHECK_H */
