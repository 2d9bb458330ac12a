/* examples/c/main.c: a C program that links the LeNet-5 model compiled by mcc
 * (build/model/lenet5.o + lenet5.h + libmcc_runtime.a, made by `make` here or by
 * examples/cmake, which compiles this same file), runs it on the MNIST test images shipped
 * in examples/lenet5/ and prints the accuracy.
 *
 * The .npy reader below handles what numpy writes for these files: format 1.0, a
 * little-endian float32 (images) or int64 (labels) array in C order. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lenet5.h"

/* Reads a .npy file's data; returns its element count (0 on error). */
static size_t read_npy(const char *path, const char *descr, size_t elem, void **data) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 0; }
    unsigned char magic[10];
    if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY", 6) != 0 || magic[6] != 1) {
        fprintf(stderr, "%s: not a .npy 1.0 file\n", path); fclose(f); return 0;
    }
    size_t hlen = magic[8] | (magic[9] << 8);
    char *header = calloc(hlen + 1, 1);
    if (!header || fread(header, 1, hlen, f) != hlen || !strstr(header, descr)) {
        fprintf(stderr, "%s: expected dtype %s\n", path, descr); free(header); fclose(f); return 0;
    }
    free(header);
    long start = ftell(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)(ftell(f) - start) / elem;
    fseek(f, start, SEEK_SET);
    *data = malloc(n * elem);
    if (!*data || fread(*data, elem, n, f) != n) { fclose(f); return 0; }
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s IMAGES.npy LABELS.npy\n", argv[0]);
        return 2;
    }
    float *x = NULL;
    int64_t *labels = NULL;
    size_t nx = read_npy(argv[1], "<f4", sizeof(float), (void **)&x);
    size_t batch = read_npy(argv[2], "<i8", sizeof(int64_t), (void **)&labels);
    if (!nx || !batch || nx != batch * LENET5_INPUT0_FLOATS_PER_SAMPLE) {
        fprintf(stderr, "the images and labels do not match the model\n");
        return 1;
    }
    float *y = malloc(batch * LENET5_OUTPUT0_FLOATS_PER_SAMPLE * sizeof(float));
    lenet5_model *model = lenet5_new(0);
    if (!model || !y) { fprintf(stderr, "cannot load the model\n"); return 1; }
    const float *inputs[LENET5_INPUTS] = { x };
    float *outputs[LENET5_OUTPUTS] = { y };
    if (lenet5_run(model, inputs, outputs, batch) != 0) {
        fprintf(stderr, "the model failed\n");
        return 1;
    }
    size_t correct = 0;
    for (size_t i = 0; i < batch; i++) {
        const float *row = y + i * LENET5_OUTPUT0_FLOATS_PER_SAMPLE;
        size_t best = 0;
        for (size_t c = 1; c < LENET5_OUTPUT0_FLOATS_PER_SAMPLE; c++)
            if (row[c] > row[best]) best = c;
        correct += (int64_t)best == labels[i];
    }
    printf("lenet5 from C: %zu samples, accuracy %.1f%%\n", batch, 100.0 * correct / batch);
    lenet5_free(model);
    free(x); free(labels); free(y);
    return 0;
}
