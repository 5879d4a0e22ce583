"""Who may do what: the viewer and admin roles a request proves (tokens, signed links, the same-site
check of an open server), and which sources a remote caller may ask the server to open."""
