/* Where a certificate says its status is published: AIA OCSP URLs and CRL Distribution Points. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509v3.h>

#include "revocation.h"

/* Appends gn if it is an http:// URI without control bytes; 0, or -1 when out of memory. */
static int take_http_uri(const GENERAL_NAME *gn, char **urls, size_t max, size_t *n)
{
    if (gn == NULL || gn->type != GEN_URI || *n >= max)
        return 0;
    const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
    const char *text = (const char *)ASN1_STRING_get0_data(uri);
    size_t len = (size_t)ASN1_STRING_length(uri);
    if (len < 8 || strncasecmp(text, "http://", 7) != 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f)
            return 0;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    urls[(*n)++] = copy;
    return 0;
}

int certs_rev_ocsp_urls(X509 *cert, char **urls, size_t max)
{
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
    size_t n = 0;
    int rc = 0;
    for (int i = 0; rc == 0 && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
        const ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (OBJ_obj2nid(ad->method) == NID_ad_OCSP)
            rc = take_http_uri(ad->location, urls, max, &n);
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    if (rc != 0) {
        certs_rev_urls_free(urls, n);
        return -1;
    }
    return (int)n;
}

int certs_rev_crl_urls(X509 *cert, char **urls, size_t max)
{
    CRL_DIST_POINTS *points = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
    size_t n = 0;
    int rc = 0;
    for (int i = 0; rc == 0 && i < sk_DIST_POINT_num(points); i++) {
        const DIST_POINT *dp = sk_DIST_POINT_value(points, i);
        /* A point for some reasons only, or with another CRL issuer, is not the full CRL. */
        if (dp->distpoint == NULL || dp->distpoint->type != 0 || dp->reasons != NULL ||
            dp->CRLissuer != NULL)
            continue;
        GENERAL_NAMES *names = dp->distpoint->name.fullname;
        for (int j = 0; rc == 0 && j < sk_GENERAL_NAME_num(names); j++)
            rc = take_http_uri(sk_GENERAL_NAME_value(names, j), urls, max, &n);
    }
    CRL_DIST_POINTS_free(points);
    if (rc != 0) {
        certs_rev_urls_free(urls, n);
        return -1;
    }
    return (int)n;
}

void certs_rev_urls_free(char **urls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(urls[i]);
        urls[i] = NULL;
    }
}
