/*
 * launcher.c — the token launcher: a small process the network process
 * starts once (hsm_open, before it reads any network input and before its
 * system-call filter), which starts every token process after that.
 *
 * Why: a token process must unseal by itself when it is restarted (its
 * unattended method runs systemd-creds or clevis, which need root for the
 * host key and a system-call set no filter of ours should allow). Started
 * by the network process, a token process would inherit the network
 * filter and its dropped privileges; started here, it starts as the
 * first one did.
 *
 * Protocol (SOCK_SEQPACKET, fd 3 of the launcher): the network process
 * sends one byte 'S' with one fd (the token process's boot socket); the
 * launcher answers the new pid (int32, -1 on failure). EOF ends the
 * launcher; its token processes end with it (PR_SET_PDEATHSIG).
 * The launcher reaps its children. It holds no secret and reads nothing
 * but its control socket.
 *
 * Must never: start anything but /proc/self/exe token-process; keep an fd
 * it was sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hsm/harden.h"
#include "hsm/base.h"
#include "hsm/launcher.h"
#include "hsm/proto.h"

char **
hsm_spawn_env(const char *softhsm_conf)
{
	static const char name[] = "SOFTHSM2_CONF=";
	size_t n = 0, i, k = 0, len;
	char **env;

	while (environ[n] != NULL)
		n++;
	if ((env = calloc(n + 2, sizeof(*env))) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (softhsm_conf != NULL &&
		    strncmp(environ[i], name, sizeof(name) - 1) == 0)
			continue;
		if ((env[k++] = strdup(environ[i])) == NULL)
			goto fail;
	}
	if (softhsm_conf != NULL) {
		len = sizeof(name) + strlen(softhsm_conf);
		if ((env[k] = malloc(len)) == NULL ||
		    str_fmt(env[k], len, "%s%s", name, softhsm_conf) != 0) {
			k++;
			goto fail;
		}
		k++;
	}
	return env;
fail:
	hsm_spawn_env_free(env);
	return NULL;
}

void
hsm_spawn_env_free(char **env)
{
	size_t i;

	for (i = 0; env != NULL && env[i] != NULL; i++)
		free(env[i]);
	free(env);
}

int
hsm_spawn_token(int boot_child, char *const *env, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none;
	char *argv[3];
	int rc;

	argv[0] = (char *)"p11vault-token";
	argv[1] = (char *)HSM_TOKEN_ARGV;
	argv[2] = NULL;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	if (posix_spawnattr_init(&at) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return -1;
	}
	sigemptyset(&none);
	rc = posix_spawn_file_actions_adddup2(&fa, boot_child, TOKP_BOOT_FD);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&at, &none);
	if (rc == 0)
		rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	if (rc == 0)
		rc = posix_spawn(pid, "/proc/self/exe", &fa, &at, argv,
		    env != NULL ? env : environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return rc == 0 ? 0 : -1;
}

static int
send_fd(int sock, int fd)
{
	char c = 'S', buf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr mh;
	struct cmsghdr *cm;

	memset(&mh, 0, sizeof(mh));
	memset(buf, 0, sizeof(buf));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = buf;
	mh.msg_controllen = sizeof(buf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* one request: 1 and the fd, 0 at EOF, -1 on a malformed one */
static int
recv_fd(int sock, int *fd)
{
	char c = 0, buf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr mh;
	struct cmsghdr *cm;
	ssize_t n;

	*fd = -1;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = buf;
	mh.msg_controllen = sizeof(buf);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n != 1 || c != 'S')
		return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
	return *fd >= 0 ? 1 : -1;
}

int
hsm_launcher_main(void)
{
	struct pollfd pf;
	int32_t answer;
	pid_t pid;
	int fd, r;

	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	for (;;) {
		pf.fd = TOKP_BOOT_FD;
		pf.events = POLLIN;
		r = poll(&pf, 1, 500);
		/* reap token processes that ended */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		r = recv_fd(TOKP_BOOT_FD, &fd);
		if (r == 0)
			break;
		answer = -1;
		if (r == 1 && hsm_spawn_token(fd, NULL, &pid) == 0)
			answer = (int32_t)pid;
		if (fd >= 0)
			close(fd);
		if (send(TOKP_BOOT_FD, &answer, sizeof(answer), MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(answer))
			break;
	}
	/* the network process is gone: its token processes end with us */
	_exit(0);
}

int
hsm_launcher_start(char *const *env, int *ctl, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	char *argv[4];
	int sp[2], rc;

	*ctl = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0)
		return -1;
	argv[0] = (char *)"p11vault-launcher";
	argv[1] = (char *)HSM_TOKEN_ARGV;
	argv[2] = (char *)HSM_LAUNCHER_ARGV;
	argv[3] = NULL;
	if (posix_spawn_file_actions_init(&fa) != 0) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	rc = posix_spawn_file_actions_adddup2(&fa, sp[1], TOKP_BOOT_FD);
	if (rc == 0)
		rc = posix_spawn(pid, "/proc/self/exe", &fa, NULL, argv,
		    env != NULL ? env : environ);
	posix_spawn_file_actions_destroy(&fa);
	close(sp[1]);
	if (rc != 0) {
		close(sp[0]);
		return -1;
	}
	*ctl = sp[0];
	return 0;
}

int
hsm_launcher_spawn(int ctl, int boot_child, pid_t *pid)
{
	int32_t answer = -1;
	ssize_t n;

	if (send_fd(ctl, boot_child) != 0)
		return -1;
	do
		n = recv(ctl, &answer, sizeof(answer), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(answer) || answer <= 0)
		return -1;
	*pid = (pid_t)answer;
	return 0;
}
