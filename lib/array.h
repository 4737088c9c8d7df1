/* array.h - arrays that grow by doubling, one helper instead of a copy of
 * the same realloc dance in every module that appends to one. */
#pragma once
#include <stddef.h>

/* The array P of *CAP elements of SIZE bytes, N of them used, with room for
 * one more: P itself when N < *CAP, else P moved to twice as many elements
 * (FIRST when *CAP is 0), *CAP updated.  NULL when out of memory (or the
 * size would overflow): P and *CAP untouched, P still the caller's. */
void *array_grow(void *p, size_t *cap, size_t n, size_t size, size_t first);
