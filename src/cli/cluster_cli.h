/* cluster_cli.h: `tern host ...`, `tern cluster ...` and the cluster forms
 * of `tern vm ...` (those without --api-socket), talking to an agent. */
#ifndef TERN_CLI_CLUSTER_CLI_H
#define TERN_CLI_CLUSTER_CLI_H

/* argv[0] is "host", "cluster" or "vm"; argv[1] the subcommand. */
int cmd_host(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_cluster_vm(int argc, char **argv);
int cmd_rule(int argc, char **argv);
int cmd_site(int argc, char **argv);
int cmd_dr(int argc, char **argv);

#endif
