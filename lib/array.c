/* array.c - arrays that grow by doubling (array.h). */
#include "array.h"
#include <stdint.h>
#include <stdlib.h>

void *array_grow(void *p, size_t *cap, size_t n, size_t size, size_t first)
{
	size_t c;
	void *q;

	if (n < *cap)
		return p;
	c = *cap ? *cap * 2 : first;
	if (c <= *cap || !size || c > SIZE_MAX / size)
		return NULL;
	if (!(q = realloc(p, c * size)))
		return NULL;
	*cap = c;
	return q;
}
