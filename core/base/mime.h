/* MIME types by file extension, shared by static files and actions with
 * matchExtensionMimeType (core.mime_type in Lua). */
#ifndef GW_MIME_H
#define GW_MIME_H

/* The Content-Type for an extension without its dot ("png"), compared
 * case-insensitively; text types carry "; charset=utf-8";
 * application/octet-stream when unknown or empty. */
const char *gw_mime_type(const char *ext);

#endif
