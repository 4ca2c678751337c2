#ifndef ROOST_FUZZ_TARGET_H
#define ROOST_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

/*
 * What libFuzzer calls in a target: LLVMFuzzerInitialize() once, if the
 * target defines it, then LLVMFuzzerTestOneInput() for each input.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
