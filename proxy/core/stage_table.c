/* The only place that knows every stage: the door session_enter() opens. */
#include "stage.h"

extern const stage head_stage, connect_stage, detect_stage, tls_stage, http_stage, tunnel_stage,
    sip_stage, turn_stage, msturn_stage, proxy_header_stage, h2_stage;

const stage *const stage_table[STAGE_COUNT] = {
    [STAGE_HEAD] = &head_stage,     [STAGE_CONNECT] = &connect_stage,
    [STAGE_DETECT] = &detect_stage, [STAGE_TLS] = &tls_stage,
    [STAGE_HTTP] = &http_stage,     [STAGE_TUNNEL] = &tunnel_stage,
    [STAGE_SIP] = &sip_stage,       [STAGE_TURN] = &turn_stage,
    [STAGE_MSTURN] = &msturn_stage, [STAGE_PROXY_HEADER] = &proxy_header_stage,
    [STAGE_H2] = &h2_stage,
};
