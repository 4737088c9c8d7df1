/* fuzz_config - the YAML configuration parser on arbitrary input. */
#include <stdint.h>
#include <stdlib.h>
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;

	if (config_parse("fuzz.yaml", (const char *)data, size, false, &c) == 0)
		config_free(c);
	return 0;
}
