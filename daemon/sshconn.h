/* sshconn.h - the ssh:// transport of a target (see sshconn.c). */
#pragma once
#include "daemon.h"

int sshconn_start(struct target *t, sd_event_io_handler_t handler);
/* Advance the connection: 1 when the receiver runs, 0 to wait for the
 * socket, or a negative errno with a sentence. */
int sshconn_step(struct target *t);
void sshconn_close(struct target *t);
void sshconn_wire_io(struct target *t, struct wire_io *io);
/* Relay the receiver's stderr lines to the log. */
void sshconn_drain_stderr(struct target *t);
/* Which socket events to wait for: reads always, writes when we have bytes
 * to send or libssh2 needs to. */
void sshconn_update_events(struct target *t, bool want_write);
