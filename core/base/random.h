/* Random identifiers from /dev/urandom. */
#ifndef GW_RANDOM_H
#define GW_RANDOM_H

/* 32 random hex characters (not NUL-terminated): GW_OK, or GW_ERR when
 * /dev/urandom cannot be read. Connection ids, session tokens (through
 * core.random_id) and api.json's empty-array token use it. */
int gw_random_hex(char out[32]);

#endif
