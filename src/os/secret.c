/* SPDX-License-Identifier: MIT */
/*
 * secret.c - the cluster secret: from the configuration, the environment or a private file.
 * The raw secret lives only in this file's buffers, which are wiped before returning; the rest
 * of the library sees only keys derived from it (core/auth.c).
 */
#define LOG_PREFIX "auth: "
#include "os/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/log.h"

#define SECRET_FILE_MAX 4096

static int load_file(const char *path, struct auth_key *key)
{
	uint8_t buf[SECRET_FILE_MAX + 1];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), err = 0;

	if (fd < 0) {
		err = -errno;
		log_err("cannot open the secret file %s (UDSM_SECRET_FILE): %s", path,
			strerror(-err));
		return err;
	}
	if (fstat(fd, &st)) {
		err = -errno;
		goto out;
	}
	/* Like ssh with a private key: a secret others can read is no secret. */
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO))) {
		log_err("refusing the secret file %s (UDSM_SECRET_FILE): it must be a regular file "
			"that only its owner can access (mode %03o; run chmod 600 %s)", path,
			(unsigned)(st.st_mode & 0777), path);
		err = -EACCES;
		goto out;
	}
	while (len <= SECRET_FILE_MAX &&
	       (n = read(fd, buf + len, SECRET_FILE_MAX + 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		len += (size_t)n;
	}
	if (len > SECRET_FILE_MAX) {
		log_err("the secret file %s is larger than %d bytes", path, SECRET_FILE_MAX);
		err = -EFBIG;
		goto out;
	}
	/* `echo secret > file` leaves a newline the other nodes' UDSM_SECRET would lack. */
	if (len && buf[len - 1] == '\n')
		len--;
	if (len && buf[len - 1] == '\r')
		len--;
	if (!len) {
		log_err("the secret file %s is empty", path);
		err = -EINVAL;
		goto out;
	}
	auth_key_derive(key, buf, len);
out:
	if (err && err != -EACCES && err != -EINVAL && err != -EFBIG)
		log_err("cannot read the secret file %s: %s", path, strerror(-err));
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return err;
}

int secret_load(const struct udsm_config *cfg, struct auth_key *key)
{
	const char *env;

	if (sodium_init() < 0) {
		log_err("libsodium failed to initialise");
		return -ENOSYS;
	}
	memset(key, 0, sizeof(*key));
	if (cfg->secret) {
		size_t len = cfg->secret_len ? cfg->secret_len : strlen(cfg->secret);

		if (!len) {
			log_err("the configured cluster secret is empty");
			return -EINVAL;
		}
		auth_key_derive(key, cfg->secret, len);
		return 0;
	}
	if ((env = getenv("UDSM_SECRET"))) {
		if (!*env) {
			log_err("UDSM_SECRET is set but empty");
			return -EINVAL;
		}
		auth_key_derive(key, env, strlen(env));
		return 0;
	}
	if ((env = getenv("UDSM_SECRET_FILE")) && *env)
		return load_file(env, key);
	auth_key_derive(key, NULL, 0);
	return 0;
}
