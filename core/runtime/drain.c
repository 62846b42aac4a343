/* See drain.h. */
#include "runtime/drain.h"

static int held[GW_DRAIN_KINDS];

void gw_drain_hold(enum gw_drain_kind kind) { held[kind]++; }

void gw_drain_release(enum gw_drain_kind kind) { held[kind]--; }

int gw_drain_count(enum gw_drain_kind kind) { return held[kind]; }
