/* Canonical JSON of a scenario (and of the workload it replays), hashed with SHA-256. */
#include "scenario_hash.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

bool cuipc_scenario_sha256(const cuipc_scenario *s, char hex[65]) {
    hex[0] = '\0';
    json_t *root = json_load_file(s->path, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return false;
    }
    json_object_del(root, "description");
    json_object_del(root, "comment");
    json_object_del(json_object_get(root, "run"), "repetitions");
    if (cuipc_scenario_replays(s)) {
        json_t *w = json_load_file(s->workload.file, JSON_REJECT_DUPLICATES, NULL);
        if (w == NULL) {
            json_decref(root);
            return false;
        }
        json_object_set_new(root, "workload_content", w);
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (text == NULL)
        return false;
    cuipc_sha256_hex(text, strlen(text), hex);
    free(text);
    return true;
}
