/* Minting leaf certificates that mimic the upstream's names (SPEC section 6). */
#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca_internal.h"

#define LEAF_BACKDATE_SECS 3600
/* The CA/Browser Forum ceiling for server certificates; longer leaves are rejected by Apple
 * and Chrome clients even under a private root. */
#define LEAF_VALIDITY_DAYS 397
#define CN_MAX_LEN         64 /* ub-common-name, RFC 5280 */
#define HOST_MAX_LEN       253
#define EC_POINT_MAX_LEN   133 /* uncompressed P-521 */
#define URL_MAX_LEN        2048

EVP_PKEY *certs_leaf_key_new(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

int certs_set_random_serial(X509 *cert)
{
    unsigned char bytes[16];
    BIGNUM *bn = NULL;
    int rc = -1;

    do {
        if (RAND_bytes(bytes, sizeof bytes) != 1)
            return -1;
        BN_free(bn);
        bn = BN_bin2bn(bytes, sizeof bytes, NULL); /* unsigned input: never negative */
        if (bn == NULL)
            return -1;
    } while (BN_is_zero(bn));

    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
    if (serial != NULL && X509_set_serialNumber(cert, serial) == 1)
        rc = 0;
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

/* Printable ASCII without spaces, 1..max_len long: what a host name, an IP literal or a URL
 * may hold, and what an IA5String carries safely. */
static int is_printable_token(const char *s, size_t max_len)
{
    size_t n = strnlen(s, max_len + 1);
    if (n == 0 || n > max_len)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return 0;
    return 1;
}

/* Fills addr with the binary address if name is an IPv4 or IPv6 literal; returns its length. */
static int parse_ip(const char *name, unsigned char addr[16])
{
    char bare[HOST_MAX_LEN + 1];
    size_t n = strlen(name);

    if (inet_pton(AF_INET, name, addr) == 1)
        return 4;
    if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
        memcpy(bare, name + 1, n - 2);
        bare[n - 2] = '\0';
        name = bare;
    }
    return inet_pton(AF_INET6, name, addr) == 1 ? 16 : 0;
}

static GENERAL_NAME *name_as_general_name(const char *name)
{
    unsigned char addr[16];
    int addr_len = parse_ip(name, addr);
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *value = addr_len ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    int ok = gn != NULL && value != NULL &&
             (addr_len ? ASN1_OCTET_STRING_set(value, addr, addr_len)
                       : ASN1_STRING_set(value, name, (int)strlen(name)));
    if (!ok) {
        ASN1_STRING_free(value);
        GENERAL_NAME_free(gn);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, addr_len ? GEN_IPADD : GEN_DNS, value);
    return gn;
}

/* The upstream's DNS and IP names (other kinds mean nothing to a TLS client), else name. */
static GENERAL_NAMES *leaf_alt_names(X509 *upstream, const char *name)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    if (names == NULL)
        return NULL;

    GENERAL_NAMES *theirs =
        upstream ? X509_get_ext_d2i(upstream, NID_subject_alt_name, NULL, NULL) : NULL;
    for (int i = 0; i < sk_GENERAL_NAME_num(theirs); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(theirs, i);
        if (gn->type != GEN_DNS && gn->type != GEN_IPADD)
            continue;
        GENERAL_NAME *copy = GENERAL_NAME_dup(gn);
        if (copy == NULL || sk_GENERAL_NAME_push(names, copy) == 0) {
            GENERAL_NAME_free(copy);
            goto fail;
        }
    }
    GENERAL_NAMES_free(theirs);
    theirs = NULL;

    if (sk_GENERAL_NAME_num(names) == 0) {
        GENERAL_NAME *own = name_as_general_name(name);
        if (own == NULL || sk_GENERAL_NAME_push(names, own) == 0) {
            GENERAL_NAME_free(own);
            goto fail;
        }
    }
    return names;

fail:
    GENERAL_NAMES_free(theirs);
    GENERAL_NAMES_free(names);
    return NULL;
}

/* The upstream's CN, else name when it fits; may leave the subject empty (SAN then critical). */
static int set_subject(X509 *leaf, X509 *upstream, const char *name)
{
    X509_NAME *subject = X509_get_subject_name(leaf);
    if (upstream != NULL) {
        const X509_NAME *theirs = X509_get_subject_name(upstream);
        int at = X509_NAME_get_index_by_NID(theirs, NID_commonName, -1);
        if (at >= 0)
            return X509_NAME_add_entry(subject, X509_NAME_get_entry(theirs, at), -1, 0);
    }
    if (strlen(name) > CN_MAX_LEN)
        return 1;
    return X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_ASC,
                                      (const unsigned char *)name, -1, -1, 0);
}

/* now-1h .. now+397d, clipped to the CA's own validity. */
static int set_validity(X509 *leaf, const X509 *ca_cert)
{
    time_t now = time(NULL);
    ASN1_TIME *not_before = X509_getm_notBefore(leaf);
    ASN1_TIME *not_after = X509_getm_notAfter(leaf);

    if (X509_time_adj_ex(not_before, 0, -LEAF_BACKDATE_SECS, &now) == NULL ||
        X509_time_adj_ex(not_after, LEAF_VALIDITY_DAYS, 0, &now) == NULL)
        return 0;
    if (ASN1_TIME_compare(not_before, X509_get0_notBefore(ca_cert)) < 0 &&
        X509_set1_notBefore(leaf, X509_get0_notBefore(ca_cert)) != 1)
        return 0;
    if (ASN1_TIME_compare(not_after, X509_get0_notAfter(ca_cert)) > 0 &&
        X509_set1_notAfter(leaf, X509_get0_notAfter(ca_cert)) != 1)
        return 0;
    /* An expired or not-yet-valid CA leaves no window to issue in. */
    return X509_cmp_time(X509_get0_notAfter(leaf), &now) > 0 &&
           ASN1_TIME_compare(X509_get0_notBefore(leaf), X509_get0_notAfter(leaf)) < 0;
}

/*
 * X509_set_pubkey goes through OpenSSL 3's encoder lookup, about 0.6 ms a call: twenty times
 * the ECDSA signature. For EC keys, fill the SubjectPublicKeyInfo fields directly instead; the
 * certificate is re-parsed after signing so its public key is usable (see reparse).
 */
static int set_public_key(X509 *leaf, EVP_PKEY *key)
{
    char group[64];
    unsigned char point[EC_POINT_MAX_LEN];
    size_t point_len = 0;

    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(key, group, sizeof group, NULL) != 1 ||
        EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                        sizeof point, &point_len) != 1)
        return X509_set_pubkey(leaf, key);
    int curve = OBJ_txt2nid(group);
    if (curve == NID_undef)
        return X509_set_pubkey(leaf, key);

    unsigned char *bits = OPENSSL_memdup(point, point_len);
    if (bits == NULL)
        return 0;
    if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(leaf), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                               V_ASN1_OBJECT, OBJ_nid2obj(curve), bits, (int)point_len) != 1) {
        OPENSSL_free(bits);
        return 0;
    }
    return 1;
}

/* Decoding our own encoding yields a certificate whose public key is parsed (TLS stacks call
 * X509_get0_pubkey) and whose DER is cached for every handshake that sends it. */
static X509 *reparse(X509 *leaf)
{
    unsigned char *der = NULL;
    int len = i2d_X509(leaf, &der);
    X509 *parsed = NULL;
    if (len > 0) {
        const unsigned char *p = der;
        parsed = d2i_X509(NULL, &p, len);
    }
    OPENSSL_free(der);
    X509_free(leaf);
    if (parsed != NULL && X509_get0_pubkey(parsed) == NULL) {
        X509_free(parsed);
        parsed = NULL;
    }
    return parsed;
}

static int add_conf_ext(X509 *leaf, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, nid, value);
    int ok = ext != NULL && X509_add_ext(leaf, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* SHA-1 of the leaf's public key bits (RFC 5280 4.2.1.2 method 1). */
static ASN1_OCTET_STRING *leaf_key_id(X509 *leaf)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    if (id == NULL || X509_pubkey_digest(leaf, EVP_sha1(), md, &len) != 1 ||
        ASN1_OCTET_STRING_set(id, md, (int)len) != 1) {
        ASN1_OCTET_STRING_free(id);
        return NULL;
    }
    return id;
}

/* Both identifiers matter to Windows' chain builder: a leaf whose SKI equals its issuer's is
 * taken for the issuer itself, and a missing AKI slows or breaks path building. */
static int add_key_ids(X509 *leaf, const certs_ca *ca)
{
    ASN1_OCTET_STRING *ski = leaf_key_id(leaf);
    AUTHORITY_KEYID *aki = certs_ca_authority_key_id(ca);
    int ok = ski != NULL && aki != NULL && ASN1_OCTET_STRING_cmp(ski, ca->key_id) != 0 &&
             X509_add1_ext_i2d(leaf, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) == 1 &&
             X509_add1_ext_i2d(leaf, NID_authority_key_identifier, aki, 0, X509V3_ADD_DEFAULT) == 1;
    ASN1_OCTET_STRING_free(ski);
    AUTHORITY_KEYID_free(aki);
    return ok;
}

/* Revocation-checking clients (SChannel, hence SfB) refuse a leaf with no CRL to fetch. */
static int add_crl_point(X509 *leaf, const char *url)
{
    CRL_DIST_POINTS *points = sk_DIST_POINT_new_null();
    DIST_POINT *point = DIST_POINT_new();
    DIST_POINT_NAME *where = DIST_POINT_NAME_new();
    GENERAL_NAMES *full = GENERAL_NAMES_new();
    GENERAL_NAME *uri = GENERAL_NAME_new();
    ASN1_IA5STRING *text = ASN1_IA5STRING_new();
    int ok = 0;

    if (points == NULL || point == NULL || where == NULL || full == NULL || uri == NULL ||
        text == NULL || ASN1_STRING_set(text, url, (int)strlen(url)) != 1)
        goto out;
    GENERAL_NAME_set0_value(uri, GEN_URI, text);
    text = NULL;
    if (sk_GENERAL_NAME_push(full, uri) == 0)
        goto out;
    uri = NULL;
    where->type = 0; /* fullName */
    where->name.fullname = full;
    full = NULL;
    point->distpoint = where;
    where = NULL;
    if (sk_DIST_POINT_push(points, point) == 0)
        goto out;
    point = NULL;
    ok = X509_add1_ext_i2d(leaf, NID_crl_distribution_points, points, 0, X509V3_ADD_DEFAULT) == 1;
out:
    ASN1_IA5STRING_free(text);
    GENERAL_NAME_free(uri);
    GENERAL_NAMES_free(full);
    DIST_POINT_NAME_free(where);
    DIST_POINT_free(point);
    CRL_DIST_POINTS_free(points);
    return ok;
}

static GENERAL_NAME *uri_name(const char *url)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *text = ASN1_IA5STRING_new();
    if (gn == NULL || text == NULL || ASN1_STRING_set(text, url, (int)strlen(url)) != 1) {
        ASN1_IA5STRING_free(text);
        GENERAL_NAME_free(gn);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, GEN_URI, text);
    return gn;
}

/* Windows prefers OCSP to the CRL when the leaf names a responder, and then needs no fetch
 * at all if the handshake staples the response. */
static int add_ocsp_access(X509 *leaf, const char *url)
{
    AUTHORITY_INFO_ACCESS *aia = sk_ACCESS_DESCRIPTION_new_null();
    ACCESS_DESCRIPTION *ad = ACCESS_DESCRIPTION_new();
    GENERAL_NAME *where = uri_name(url);
    int ok = 0;

    if (aia == NULL || ad == NULL || where == NULL)
        goto out;
    ASN1_OBJECT_free(ad->method);
    ad->method = OBJ_nid2obj(NID_ad_OCSP);
    GENERAL_NAME_free(ad->location);
    ad->location = where;
    where = NULL;
    if (sk_ACCESS_DESCRIPTION_push(aia, ad) == 0)
        goto out;
    ad = NULL;
    ok = X509_add1_ext_i2d(leaf, NID_info_access, aia, 0, X509V3_ADD_DEFAULT) == 1;
out:
    GENERAL_NAME_free(where);
    ACCESS_DESCRIPTION_free(ad);
    AUTHORITY_INFO_ACCESS_free(aia);
    return ok;
}

static int add_extensions(X509 *leaf, const certs_ca *ca, EVP_PKEY *leaf_key, X509 *upstream,
                          const char *name, const char *crl_url, const char *ocsp_url)
{
    const char *usage = EVP_PKEY_get_base_id(leaf_key) == EVP_PKEY_RSA
                            ? "critical,digitalSignature,keyEncipherment"
                            : "critical,digitalSignature";
    if (!add_conf_ext(leaf, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_conf_ext(leaf, NID_key_usage, usage) ||
        !add_conf_ext(leaf, NID_ext_key_usage, "serverAuth") || !add_key_ids(leaf, ca))
        return 0;

    GENERAL_NAMES *names = leaf_alt_names(upstream, name);
    /* RFC 5280 4.2.1.6: with an empty subject the SAN must be critical. */
    int critical = X509_NAME_entry_count(X509_get_subject_name(leaf)) == 0;
    int ok = names != NULL && X509_add1_ext_i2d(leaf, NID_subject_alt_name, names, critical,
                                                X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(names);
    if (ok && crl_url != NULL)
        ok = add_crl_point(leaf, crl_url);
    if (ok && ocsp_url != NULL)
        ok = add_ocsp_access(leaf, ocsp_url);
    return ok;
}

/* Tells the OCSP responder this serial is ours until the leaf expires. */
static int record_serial(const certs_ca *ca, const X509 *leaf)
{
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)) != 1)
        return -1;
    return certs_issued_add(ca->issued, X509_get0_serialNumber(leaf),
                            time(NULL) + (time_t)days * 86400 + secs);
}

X509 *certs_mint_leaf(const certs_ca *ca, EVP_PKEY *leaf_key, X509 *upstream, const char *name,
                      const char *crl_url)
{
    return certs_mint_leaf_ex(ca, leaf_key, upstream, name, crl_url, NULL);
}

X509 *certs_mint_leaf_ex(const certs_ca *ca, EVP_PKEY *leaf_key, X509 *upstream, const char *name,
                         const char *crl_url, const char *ocsp_url)
{
    if (ca == NULL || leaf_key == NULL || name == NULL || !is_printable_token(name, HOST_MAX_LEN))
        return NULL;
    if ((crl_url != NULL && !is_printable_token(crl_url, URL_MAX_LEN)) ||
        (ocsp_url != NULL && !is_printable_token(ocsp_url, URL_MAX_LEN)))
        return NULL;

    X509 *leaf = X509_new();
    if (leaf == NULL)
        return NULL;
    int ok = X509_set_version(leaf, X509_VERSION_3) && certs_set_random_serial(leaf) == 0 &&
             set_validity(leaf, ca->cert) && set_subject(leaf, upstream, name) &&
             X509_set_issuer_name(leaf, X509_get_subject_name(ca->cert)) &&
             set_public_key(leaf, leaf_key) &&
             add_extensions(leaf, ca, leaf_key, upstream, name, crl_url, ocsp_url) &&
             X509_sign(leaf, ca->key, ca->sha256) > 0;
    if (!ok) {
        X509_free(leaf);
        return NULL;
    }
    leaf = reparse(leaf);
    if (leaf != NULL && record_serial(ca, leaf) != 0) {
        X509_free(leaf);
        leaf = NULL;
    }
    return leaf;
}
