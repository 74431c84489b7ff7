# The C core's compiler flags, in one place. csrc/Makefile includes this
# file; setup.py reads it (only `NAME := words` lines) to build the copy the
# wheel ships, so the unit-tested core and the one users run are compiled alike.
#
# Knobs (environment or make variables), the same for both builds:
#   SNAKEPIT_DEBUG=1     -O0 instead of -O2
#   SNAKEPIT_SANITIZE=1  ASan + UBSan (setup.py; csrc/Makefile has test-sanitize)
#   SNAKEPIT_COVERAGE=1  gcov instrumentation (--coverage, -O0)

SP_STD       := -std=c11 -D_GNU_SOURCE
SP_WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
SP_CODEGEN   := -g -fvisibility=hidden -fPIC -pthread
SP_OPT       := -O2
SP_OPT_DEBUG := -O0
SP_SANITIZE  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SP_COVERAGE  := --coverage -O0
SP_LIBS      := -lrt -ldl -pthread
