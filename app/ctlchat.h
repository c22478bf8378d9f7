/* ctlchat.h - tetherctl's chat and watch commands (ctlchat.c). */
#ifndef TETHER_CTLCHAT_H
#define TETHER_CTLCHAT_H

#include "client.h"

/* tetherctl chat [options] TEXT...: 0 when the reply completed, 1 when it did not
 * (or on an error), 2 on a usage error, 3 when a tool call could not be answered. */
int ctlchat_chat(struct client *c, int argc, char **argv);
/* tetherctl watch RUN_ID [--from EVENT_ID]: 0 when the run completed, else 1 or 2. */
int ctlchat_watch(struct client *c, int argc, char **argv);

#endif
