/*
 * chdb-run: runs SQL statements on chDB (ClickHouse as a library) and prints
 * each result, so that Go tests can check SQL on current ClickHouse without a
 * server. Built by scripts/chdb/setup.sh against the libchdb.so of the npm
 * package @chdb/lib-linux-x64-gnu.
 *
 * Why C and not the package's Node binding: chdb_node.node needs
 * GLIBCXX_3.4.32 (GCC 13's libstdc++), Debian 12 ships GCC 12's, so the
 * binding does not load here; libchdb.so itself needs only libc.
 *
 * Usage: chdb-run DATA_DIR [FORMAT] < statements
 *   stdin holds the statements separated by NUL bytes (so a statement may
 *   hold any text, newlines and semicolons included);
 *   FORMAT is the output format of every statement (default JSONCompact).
 * For each statement, in order, stdout gets one record:
 *   "OK <n>\n" followed by n bytes of output, or
 *   "ERR <n>\n" followed by n bytes of error message,
 * and the run goes on after an error. Exit status: 0 when every record was
 * written, 2 on bad usage or when chDB cannot start.
 *
 * All statements share one connection on DATA_DIR, so DDL, INSERT and
 * SELECT see each other's effects, as they would on a server.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few entry points of libchdb.so's C API that this program uses. */
typedef struct chdb_result_ { void *internal_data; } chdb_result;
typedef struct chdb_connection_ { void *internal_data; } *chdb_connection;
extern chdb_connection *chdb_connect(int argc, char **argv);
extern void chdb_close_conn(chdb_connection *conn);
extern chdb_result *chdb_query_n(chdb_connection conn, const char *query, size_t query_len,
                                 const char *format, size_t format_len);
extern char *chdb_result_buffer(chdb_result *result);
extern size_t chdb_result_length(chdb_result *result);
extern const char *chdb_result_error(chdb_result *result);
extern void chdb_destroy_query_result(chdb_result *result);

static char *read_all(FILE *f, size_t *len) {
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	if (buf == NULL) return NULL;
	for (;;) {
		if (n == cap) {
			cap *= 2;
			char *grown = realloc(buf, cap);
			if (grown == NULL) { free(buf); return NULL; }
			buf = grown;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		if (r == 0) break;
		n += r;
	}
	*len = n;
	return buf;
}

static void record(const char *kind, const char *data, size_t len) {
	printf("%s %zu\n", kind, len);
	fwrite(data, 1, len, stdout);
}

int main(int argc, char **argv) {
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: chdb-run DATA_DIR [FORMAT] < NUL-separated statements\n");
		return 2;
	}
	const char *format = argc == 3 ? argv[2] : "JSONCompact";

	size_t pathlen = strlen(argv[1]) + sizeof("--path=");
	char *patharg = malloc(pathlen);
	if (patharg == NULL) return 2;
	snprintf(patharg, pathlen, "--path=%s", argv[1]);
	char *cargv[] = {"chdb-run", patharg};
	chdb_connection *conn = chdb_connect(2, cargv);
	if (conn == NULL) {
		fprintf(stderr, "chdb-run: chdb_connect(%s) failed\n", patharg);
		return 2;
	}

	size_t len;
	char *in = read_all(stdin, &len);
	if (in == NULL) {
		fprintf(stderr, "chdb-run: reading stdin: out of memory\n");
		return 2;
	}
	size_t start = 0;
	while (start < len) {
		char *nul = memchr(in + start, 0, len - start);
		size_t end = nul != NULL ? (size_t)(nul - in) : len;
		chdb_result *res = chdb_query_n(*conn, in + start, end - start, format, strlen(format));
		const char *err = res != NULL ? chdb_result_error(res) : "chdb_query_n returned no result";
		if (err != NULL) {
			record("ERR", err, strlen(err));
		} else {
			record("OK", chdb_result_buffer(res), chdb_result_length(res));
		}
		if (res != NULL) chdb_destroy_query_result(res);
		fflush(stdout);
		start = end + 1;
	}
	free(in);
	chdb_close_conn(conn);
	return 0;
}
