/* vanilla import: a PyTorch .pth (torch.save) state_dict into a safetensors weight file,
 * optionally checked against (and described by) a config's model. */
#include "train/train_impl.h"

#include <stdlib.h>
#include <string.h>


/* Checks the imported tensors against cfg's model and adds the model description and the
 * preprocessing to w's metadata. */
static int check_and_describe(vn_st_writer *w, const char *in, const vn_config *cfg,
                              vn_pth_import_result *res, vn_error *err)
{
    void *buf = NULL;
    size_t len = 0;
    vn_st_file *f = NULL;
    vn_vanillanet *m = NULL;
    vn_ckpt_info info;
    memset(&info, 0, sizeof info);
    int rc = vn_st_serialize(w, 0, &buf, &len, err);
    if (rc == VN_OK) rc = vn_st_open_memory(buf, len, in, &f, err);
    free(buf);
    if (rc == VN_OK) rc = vn__plain_info(f, in, cfg, &info, err);
    if (rc == VN_OK) rc = vn_vanillanet_create(&info.model, info.deploy, &m, err);
    if (rc == VN_OK) rc = vn_state_check_all(m, f, info.prefix, info.deploy, err);
    if (rc == VN_OK && info.prefix[0])
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: the state_dict's names start with '%s'", in, info.prefix);
    if (rc == VN_OK)
        /* No class names: a .pth has none (the numbers vn__plain_info makes up would make
         * eval refuse an image folder with real class names); readers then take the sorted
         * folder names, as for a plain state_dict and torchvision's ImageFolder. */
        rc = vn__write_model_meta(w, m, cfg, NULL, NULL, 0, err);
    if (rc == VN_OK) {
        res->checked = true;
        res->deploy = info.deploy;
        res->num_classes = info.model.num_classes;
    }
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&info);
    vn_st_close(f);
    return rc;
}

int vn_import_pth(const char *in, const char *key, const vn_config *cfg, const char *out,
                  vn_pth_import_result *res, vn_error *err)
{
    memset(res, 0, sizeof *res);
    vn_pth *p = NULL;
    int rc = vn_pth_read(in, &p, err);
    if (rc != VN_OK) return rc;
    vn_st_writer *w = vn_st_writer_new();
    if (!w) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) rc = vn_pth_state_dict(p, key, w, &res->stats, err);
    vn_pth_free(p);
    if (rc == VN_OK && cfg) rc = check_and_describe(w, in, cfg, res, err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "format", "pt", err);
    if (rc == VN_OK) rc = vn_st_write(w, out, VN_ST_CRC32, err);
    vn_st_writer_free(w);
    return rc;
}
