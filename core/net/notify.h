/* systemd's readiness protocol without libsystemd: a datagram such as
 * "READY=1" to the unix socket named by $NOTIFY_SOCKET (sd_notify(3)).
 * Nothing happens when the variable is unset, so it costs nothing outside
 * a Type=notify unit. */
#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H

/* Send 'state' ("READY=1", "STOPPING=1", ...). Returns GW_OK, or GW_ERR
 * when $NOTIFY_SOCKET is unset or the message could not be sent. */
int gw_notify(const char *state);

#endif
