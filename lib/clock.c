/* clock.c - wall and monotonic time in microseconds (see clock.h). */
#include "clock.h"
#include <limits.h>
#include <time.h>

static uint64_t usec_of(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t clock_now_usec(void)
{
	return usec_of(CLOCK_REALTIME);
}

uint64_t clock_mono_usec(void)
{
	return usec_of(CLOCK_MONOTONIC);
}

uint64_t clock_deadline(uint64_t timeout)
{
	uint64_t now = clock_mono_usec();

	return !timeout || timeout > UINT64_MAX - now ? UINT64_MAX : now + timeout;
}

int clock_ms_until(uint64_t deadline)
{
	uint64_t now, ms;

	if (deadline == UINT64_MAX)
		return -1;
	now = clock_mono_usec();
	if (now >= deadline)
		return 0;
	ms = (deadline - now + 999) / 1000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}
