/* fuzz_runbook - the failover runbook parser on arbitrary input. */
#include <stdint.h>
#include <stdlib.h>
#include "runbook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct runbook *rb = NULL;

	if (runbook_parse("fuzz.yaml", (const char *)data, size, false, &rb) == 0)
		runbook_free(rb);
	return 0;
}
