/* vault_cmd.h - the vault's subcommands (tools/cmd_vault.c, vault_recv.c). */
#pragma once

int cmd_vault(int argc, char **argv);   /* vault ls|check|prune|recv */
int cmd_restore(int argc, char **argv); /* restore --vault URL ... */
int vault_recv(int argc, char **argv);  /* the writer run by basculed */
