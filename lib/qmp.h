/* qmp.h - a client of QEMU's machine protocol (QMP) and of qemu-guest-agent
 * over their unix sockets: one JSON object per line, as QEMU's
 * docs/interop/qmp-spec.rst and qemu-ga-ref describe.
 *
 * Every call is bounded by the connection's timeout: a QEMU or an agent that
 * never answers costs at most that long, never a hang. */
#pragma once
#include <jansson.h>
#include <stdbool.h>

struct qmp;

/* Connect to the QMP socket PATH, read QEMU's greeting and leave capability
 * negotiation ("qmp_capabilities"), each step within TIMEOUT_MS.  On success
 * *RET_Q owns the connection (free with qmp_close); untouched on failure. */
int qmp_open(const char *path, int timeout_ms, struct qmp **ret_q);
/* Connect to the guest agent's socket PATH (no greeting) and resynchronise
 * with "guest-sync" so that a reply left from an earlier client is never
 * taken for ours.  Same ownership and timeout as qmp_open. */
int qmp_open_agent(const char *path, int timeout_ms, struct qmp **ret_q);
/* Run command CMD with ARGS (an object, or NULL; the reference is taken
 * even on failure).  Asynchronous events met on the way are skipped.  On
 * success returns 0 and stores the "return" value in *RET (a new
 * reference; NULL accepted to drop it).  A QMP error is -EREMOTEIO with
 * QEMU's class and description in err_msg(); -ETIMEDOUT when nothing came
 * in time; -EPROTO for a line that is not a QMP reply. */
int qmp_exec(struct qmp *q, const char *cmd, json_t *args, json_t **ret);
/* The error class of the last -EREMOTEIO reply ("GenericError",
 * "DeviceNotFound", ...), "" if none. */
const char *qmp_error_class(const struct qmp *q);
/* Send CMD and do not wait for its reply (guest-fsfreeze-thaw on a
 * connection being given up).  Returns 0 or a negative errno. */
int qmp_send(struct qmp *q, const char *cmd, json_t *args);
void qmp_close(struct qmp *q);
