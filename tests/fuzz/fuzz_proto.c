/* fuzz_proto - every message body decoder, and the frame parser of an
 * established session, on arbitrary bytes. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "pgproto.h"
#include "proto.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct state_group sg;
	struct msg_epoch_begin eb;
	struct msg_source s;
	struct msg_extent e;
	struct msg_epoch_end ee;
	struct msg_ack a;
	struct msg_pgsource pgs;
	struct msg_wal wal;
	struct msg_basefile bf;
	struct rbuf b;
	uint32_t n;

	b = rbuf_init(data, size); proto_get_epoch_begin(&b, &eb);
	b = rbuf_init(data, size); proto_get_source(&b, &s);
	b = rbuf_init(data, size); proto_get_extent(&b, &e);
	b = rbuf_init(data, size); proto_get_epoch_end(&b, &ee);
	b = rbuf_init(data, size); proto_get_ack(&b, &a, false);
	b = rbuf_init(data, size); proto_get_ack(&b, &a, true);
	b = rbuf_init(data, size); pgproto_get_pgsource(&b, &pgs);
	b = rbuf_init(data, size); pgproto_get_wal(&b, &wal);
	b = rbuf_init(data, size); pgproto_get_basefile(&b, &bf);
	b = rbuf_init(data, size);
	if (rbuf_get_u32(&b, &n) == 0)
		for (uint32_t i = 0; i < n && i < 8 && proto_get_state_group(&b, &sg) == 0; i++)
			;
	/* The same bytes as a stream arriving at a receiver before the handshake. */
	{
		static struct site_key *k;
		struct wire w;
		enum wire_type t;
		struct rbuf body;
		int p[2];

		if (!k) {
			k = malloc(sizeof(*k));
			memset(k->k, 7, sizeof(k->k));
		}
		if (pipe2(p, O_NONBLOCK) == 0) {
			wire_init(&w, p[0], p[1], WIRE_ROLE_RECV, k);
			wbuf_put_bytes(&w.in, data, size);
			while (wire_next(&w, &t, &body) > 0)
				;
			wire_free(&w);
			close(p[0]);
			close(p[1]);
		}
	}
	return 0;
}
