/* child.h - the daemon's children: receivers (`bascule recv`), relays
 * (`bascule relay`) and vault writers, each behind three pipes.
 *
 * The loop never waits for one: a child is reaped by sd_event_add_child;
 * to stop it, its owner closes the pipes (it sees EOF and ends by itself),
 * then SIGTERM follows after CHILD_GRACE_USEC and SIGKILL after twice that,
 * from timers. */
#pragma once
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

struct daemon;
struct child;

#define CHILD_GRACE_USEC 1000000ULL

/* Called once, from the loop, when the child has exited (SI: how); the
 * child object is freed when it returns. */
typedef void (*child_exit_fn)(void *userdata, const siginfo_t *si);

/* Start ARGV[0] (a path) with ARGV, stdin/stdout/stderr on three new pipes
 * whose other ends are returned non-blocking and close-on-exec: *RET_IN
 * (write: the child's stdin), *RET_OUT and *RET_ERR (read).  The child
 * gets the daemon's environment and an empty signal mask.  0 and *RET, or
 * a negative errno with a sentence (outputs untouched). */
int child_spawn(struct daemon *d, char *const argv[], child_exit_fn on_exit, void *userdata,
		struct child **ret, int *ret_in, int *ret_out, int *ret_err);
/* The owner has closed the pipes: the child should end; SIGTERM, then
 * SIGKILL if it does not.  ON_EXIT still fires. */
void child_stop(struct child *c);
/* The owner goes away: the child is stopped as by child_stop and reaped,
 * ON_EXIT is never called.  Accepts NULL. */
void child_release(struct child *c);
pid_t child_pid(const struct child *c);
/* Children not yet reaped (owned or released). */
unsigned child_count(const struct daemon *d);
/* At exit, after the loop: stop and reap every child, waiting at most
 * 2 * CHILD_GRACE_USEC in all. */
void child_reap_all(struct daemon *d);
