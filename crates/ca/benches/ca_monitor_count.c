/* ca_monitor_count: the libca baseline for benches/monitor_load.rs.
 * Subscribes (DBR_TIME of the native type, DBE_VALUE|DBE_ALARM) to every PV named in a
 * file, then for SECONDS counts updates and gaps (a PV's value is its tick number k,
 * so a jump of k by more than 1 is a lost update). Prints "COUNTING" when the counting
 * window starts, then at its end one line:
 *   LIBCA events=N secs=S events_per_s=R cpu_pct=C rss_kb=K gaps=G connected=M
 * usage: ca_monitor_count NAMES_FILE SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include "cadef.h"

typedef struct { chid ch; double last; int have; int subscribed; } pv_t;
static volatile unsigned long n_ev = 0, n_gap = 0, n_conn = 0;
static volatile int counting = 0;

static void on_event(struct event_handler_args a) {
    pv_t *p = (pv_t *)a.usr;
    if (a.status != ECA_NORMAL || !a.dbr) return;
    const struct dbr_time_double *d = (const struct dbr_time_double *)a.dbr;
    double v = a.type == DBR_TIME_DOUBLE ? d->value : 0;
    if (counting) {
        n_ev++;
        if (p->have && v > p->last + 1) n_gap += (unsigned long)(v - p->last - 1);
    }
    p->last = v; p->have = 1;
}

static void on_conn(struct connection_handler_args a) {
    pv_t *p = (pv_t *)ca_puser(a.chid);
    if (a.op != CA_OP_CONN_UP) return;
    n_conn++;
    if (!p->subscribed) {
        p->subscribed = 1;
        ca_create_subscription(dbf_type_to_DBR_TIME(ca_field_type(a.chid)), 1, a.chid,
                               DBE_VALUE | DBE_ALARM, on_event, p, NULL);
    }
}

static double mono(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static double cpu(void) { struct rusage r; getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec * 1e-6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec * 1e-6; }
static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r"); char line[256]; long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    fclose(f); return kb;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s NAMES_FILE SECONDS\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "r"); if (!f) { perror(argv[1]); return 2; }
    double secs = atof(argv[2]);
    int cap = 0, n = 0; char line[256];
    while (fgets(line, sizeof line, f)) cap++;
    rewind(f);
    /* allocated once: each element's address is the channel's user pointer */
    pv_t *pvs = calloc(cap ? cap : 1, sizeof *pvs);
    ca_context_create(ca_enable_preemptive_callback);
    while (n < cap && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0; if (!*line) continue;
        ca_create_channel(line, on_conn, &pvs[n], 0, &pvs[n].ch); n++;
    }
    ca_flush_io();
    double t0 = mono();
    while (n_conn < (unsigned long)n && mono() - t0 < 20) ca_pend_event(0.1);
    ca_pend_event(2.0); /* warm-up */
    printf("COUNTING\n");
    fflush(stdout);
    counting = 1;
    double c0 = cpu(); t0 = mono();
    ca_pend_event(secs);
    double dt = mono() - t0, dc = cpu() - c0;
    counting = 0;
    printf("LIBCA events=%lu secs=%.3f events_per_s=%.0f cpu_pct=%.1f rss_kb=%ld gaps=%lu connected=%lu\n",
           n_ev, dt, n_ev / dt, 100 * dc / dt, rss_kb(), n_gap, n_conn);
    fflush(stdout);
    return 0;
}
