/*
 * A C program that embeds the snakepit core: it allocates a float32 tensor in
 * shared memory, prints its descriptor as one JSON line, waits for a Python
 * process to modify it in place, and prints what it then sees.
 *
 * Build: cc producer.c -I$(python -c 'import snakepit; print(snakepit.get_include())') \
 *          $(python -c 'import snakepit, os; print(os.path.dirname(snakepit.get_library()))')/libsnakepit_core.so
 */
#include <inttypes.h>
#include <stdio.h>

#include "snakepit_core.h"

#define COUNT 1024

int main(void) {
    sp_arena *arena = NULL;
    int status = sp_arena_create(NULL, &arena);
    if (status != SP_OK) {
        fprintf(stderr, "arena: %s\n", sp_strerror(status));
        return 1;
    }
    sp_block block;
    status = sp_arena_alloc(arena, COUNT * sizeof(float), &block);
    if (status != SP_OK) {
        fprintf(stderr, "alloc: %s\n", sp_strerror(status));
        sp_arena_destroy(arena);
        return 1;
    }
    float *data = (float *)block.data;
    for (int i = 0; i < COUNT; i++) {
        data[i] = (float)i * 0.5f;
    }
    printf("{\"region\": \"%s\", \"offset\": %" PRIu64 ", \"nbytes\": %" PRIu64
           ", \"region_size\": %" PRIu64 ", \"shape\": [%d], \"dtype\": \"float32\"}\n",
           block.region_name, block.data_offset, block.nbytes, block.region_size, COUNT);
    fflush(stdout);

    char line[64];
    if (fgets(line, sizeof line, stdin) == NULL) {
        fprintf(stderr, "no reply from the consumer\n");
    }
    double sum = 0.0;
    for (int i = 0; i < COUNT; i++) {
        sum += data[i];
    }
    printf("c sees data[0]=%.1f sum=%.1f\n", (double)data[0], sum);

    status = sp_arena_release(arena, block.data);
    sp_arena_destroy(arena);
    return status == SP_OK ? 0 : 1;
}
