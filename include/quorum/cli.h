/*
 * quorum/cli.h - the top layer: the subcommands that drive several stages, and the conventions every
 * subcommand of the single `quorum` binary follows.
 *
 * main() initialises MPI (every subcommand may run under mpirun/srun), checks the world size against
 * SLURM_NTASKS, then calls one subcommand with argv[0] = the subcommand name. Each returns the process
 * exit code (0 ok, 1 failure, 2 usage). "--help" / "-h" anywhere prints the subcommand's usage
 * (cli_wants_help, quorum/common.h). A stage's own subcommands are declared in its header
 * (cmd_ingest in quorum/corpus.h, cmd_score in quorum/score.h, ...); these are the cli layer's.
 */
#ifndef QUORUM_CLI_H
#define QUORUM_CLI_H

int cmd_run(int argc, char **argv);    /* src/cli: ingest -> score -> vote -> clean (-> dpo) for a job file */
int cmd_verify(int argc, char **argv); /* src/cli: check an output directory against its inputs */
/* src/app/cmd_demo.c, linked into the quorum binary only (not quorum_core): the planted-noise
 * experiment end to end (gen -> tokenizer -> rm-train -> run -> dpo x3 -> summary). */
int cmd_demo(int argc, char **argv);

#endif
