/* Commands of the gateway binary other than serving (`gateway new DIR`):
 * each is a Lua module of the runtime (gateway.new) run in a plain Lua
 * state with gateway.core and a few file-system functions. */
#ifndef GW_CLI_H
#define GW_CLI_H

/* Run module 'name''s main(args, fs) with argv[0..argc-1] as args and
 * return its exit status (0 success, 1 failure, 2 bad usage); its
 * messages go to stdout and stderr. */
int gw_cli_run(const char *name, int argc, char **argv);

#endif
