/*
 * /metrics in the OpenMetrics text format, served only on the metrics
 * listener ([listen] metrics, off by default), so an administrator decides
 * who reaches it by the address it binds (and a firewall), apart from the
 * page and JMAP.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/metrics.h"
#include "roost/queue.h"
#include "roost/services.h"

#include "http_impl.h"

void
http_metrics(struct http_session *s)
{
	struct buf b = BUF_INIT(0);

	metrics_render(&b);
	if (s->svc->queue != NULL) {
		struct queue_entry **v = NULL;
		size_t n = 0;

		if (queue_scan(queue_dir(s->svc->queue), &v, &n) == 0) {
			for (size_t i = 0; i < n; i++)
				queue_entry_free(&v[i]);
			free(v);
			buf_printf(&b,
			           "# TYPE roost_queue_messages gauge\n"
			           "# HELP roost_queue_messages Messages in the outbound queue.\n"
			           "roost_queue_messages %zu\n",
			           n);
		}
	}
	buf_append_str(&b, "# EOF\n");
	http_respond(s, 200, "application/openmetrics-text; version=1.0.0; charset=utf-8", b.data,
	             b.len, "Cache-Control: no-store\r\n");
	buf_free(&b);
}
