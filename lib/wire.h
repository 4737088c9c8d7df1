/* wire.h - Bascule's framed, encrypted stream (docs/protocol.md).
 *
 * Every frame is an 8-byte header followed by a body:
 *     u32 body_len | u8 type | u8 flags | u16 reserved (0)
 * Before the handshake completes, bodies are clear (HELLO, STREAM, ERROR).
 * After it, every body is one libsodium secretstream XChaCha20-Poly1305
 * message whose associated data is the 8-byte header, so a frame cannot be
 * altered, reordered, replayed, dropped or moved to another session unnoticed.
 * Each direction has its own key, derived from the site key and both peers'
 * random nonces. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sodium.h>
#include "buf.h"
#include "key.h"

#define WIRE_MAGIC "BASCULE1"
#define WIRE_VERSION 3 /* 2: PostgreSQL sources (docs/protocol.md, section 7); 3: digests
                          * of version 2, the Merkle tree (lib/merkle.h) */
#define WIRE_HDR_BYTES 8
/* Hard maximum of one frame's plaintext: a peer that announces more is cut off. */
#define WIRE_MAX_BODY (2u << 20)
#define WIRE_NONCE_BYTES 32

enum wire_type {
	MSG_HELLO = 1,       /* clear: magic, version, role, key id, nonce */
	MSG_STREAM = 2,      /* clear: the sender's secretstream header */
	MSG_ERROR = 3,       /* clear or sealed: code, text; the sender then closes */
	MSG_STATE = 16,      /* recv -> daemon: where each replica stands */
	MSG_EPOCH_BEGIN = 17,/* daemon -> recv */
	MSG_SOURCE = 18,     /* daemon -> recv: one source of the epoch */
	MSG_EXTENT = 19,     /* daemon -> recv: data of one source */
	MSG_EPOCH_END = 20,  /* daemon -> recv: counts; the epoch may be applied */
	MSG_ACK = 21,        /* recv -> daemon: epoch applied and durable */
	MSG_NACK = 22,       /* recv -> daemon: epoch refused, nothing applied */
	MSG_BYE = 23,        /* either: orderly end (secretstream TAG_FINAL) */
	MSG_SIG_REQUEST = 24,/* daemon -> recv: send librsync signatures of a replica */
	MSG_SIG = 25,        /* recv -> daemon: the signature of one range */
	MSG_SIG_END = 26,    /* recv -> daemon: all ranges sent */
	MSG_PGSOURCE = 27,   /* daemon -> recv: a PostgreSQL source of the epoch (lib/pgproto.h) */
	MSG_WAL = 28,        /* daemon -> recv: WAL bytes of it */
	MSG_BASEFILE = 29,   /* daemon -> recv: a piece of a file of its base backup */
};

enum wire_role { WIRE_ROLE_DAEMON = 1, WIRE_ROLE_RECV = 2 };

/* How a wire moves bytes: plain fds by default, or a transport (an SSH
 * channel) that returns what read()/write() would, or -EAGAIN. */
struct wire_io {
	ssize_t (*read)(void *ctx, void *buf, size_t len);
	ssize_t (*write)(void *ctx, const void *buf, size_t len);
	void *ctx;
};

struct wire {
	int rfd, wfd;
	struct wire_io io; /* io.read NULL: use rfd/wfd */
	enum wire_role role;
	struct wbuf in;   /* raw bytes received, from in_off on not yet parsed */
	size_t in_off;
	struct wbuf out;  /* raw bytes to send, from out_off on not yet written */
	size_t out_off;
	struct wbuf plain;/* last opened frame body */
	uint8_t my_nonce[WIRE_NONCE_BYTES], peer_nonce[WIRE_NONCE_BYTES];
	uint8_t key_id[KEY_ID_BYTES];
	bool hello_sent, hello_rcvd, tx_ready, rx_ready, finished, eof;
	crypto_secretstream_xchacha20poly1305_state tx, rx;
	uint8_t ktx[32], krx[32];
	uint64_t bytes_in, bytes_out;
	char peer_error[256];
};

void wire_init(struct wire *w, int rfd, int wfd, enum wire_role role, const struct site_key *k);
/* Wipes keys, frees buffers; does not close the fds. */
void wire_free(struct wire *w);

/* Queue our HELLO (clear). */
int wire_send_hello(struct wire *w);
/* Queue a frame; sealed once the handshake has derived keys, else only
 * HELLO/STREAM/ERROR are allowed. FINAL marks the last frame (BYE). */
int wire_send(struct wire *w, enum wire_type type, const void *body, size_t len);
int wire_send_error(struct wire *w, int code, const char *text);

/* Write queued bytes.  Returns 0 when all was written, -EAGAIN if the fd
 * would block, or a negative errno. */
int wire_flush(struct wire *w);
bool wire_pending_out(const struct wire *w);
size_t wire_out_len(const struct wire *w);
/* Read what is available (one read()).  0 on EOF (w->eof set), >0 bytes read,
 * -EAGAIN, or a negative errno. */
int wire_fill(struct wire *w);
/* Parse the next complete frame from what has been read.  Returns 1 and sets
 * *ret_type and *ret_body (valid until the next call) for an application
 * frame; 0 if more bytes are needed (handshake frames are consumed here);
 * negative errno on a protocol violation or an authentication failure
 * (-EBADMSG), a wrong key (-EKEYREJECTED) or a peer error (-ECONNABORTED,
 * text in w->peer_error). */
int wire_next(struct wire *w, enum wire_type *ret_type, struct rbuf *ret_body);
/* True once both directions are keyed. */
bool wire_ready(const struct wire *w);

/* Blocking helpers for one-shot programs (recv, tools). */
int wire_flush_blocking(struct wire *w);
/* Wait for the next application frame; -ECONNRESET on EOF, whose sentence
 * says whether the stream ended on a frame boundary or was cut inside one. */
int wire_recv_blocking(struct wire *w, enum wire_type *ret_type, struct rbuf *ret_body);
/* After EOF: the bytes of an incomplete frame left unparsed (0: the stream
 * ended on a frame boundary, or has not ended). */
size_t wire_cut_bytes(const struct wire *w);
/* True when more input is at hand without waiting: received bytes not yet
 * parsed, or the read fd readable now (a receiver's group commit: the next
 * epoch is already coming). */
bool wire_input_pending(const struct wire *w);
/* True when a complete frame is at hand: in what was received, after at
 * most one read that does not wait (a receiver acks what it staged before
 * it would wait for more). */
bool wire_frame_at_hand(struct wire *w);
/* Like wire_flush but writes at most MAX bytes; returns bytes written (>= 0)
 * or a negative errno (-EAGAIN when nothing could be written). */
ssize_t wire_flush_some(struct wire *w, size_t max);
