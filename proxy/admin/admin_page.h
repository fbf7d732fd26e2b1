#ifndef HANDOFF_ADMIN_PAGE_H
#define HANDOFF_ADMIN_PAGE_H

/** The self-refreshing active-sessions page (no external assets). */
extern const char admin_page_html[];

#endif
