/* SPDX-License-Identifier: MIT */
/*
 * secret.h - where a node's cluster secret comes from: udsm_config.secret, else the
 * environment variable UDSM_SECRET, else the file named by UDSM_SECRET_FILE.
 */
#ifndef UDSM_SECRET_H
#define UDSM_SECRET_H

#include "core/auth.h"
#include "udsm.h"

/**
 * secret_load() - derive @key from the configured secret (see udsm_config.secret).
 * Returns 0 (key->secret tells whether there was one), or an error already logged: -EACCES
 * for a secret file others may read, -EINVAL for an empty secret, -errno, or -ENOSYS if
 * libsodium cannot start.
 */
int secret_load(const struct udsm_config *cfg, struct auth_key *key);

#endif /* UDSM_SECRET_H */
