#include "roost/error.h"

const char *
roost_strerror(int err)
{
	switch (err) {
	case ROOST_OK:
		return "success";
	case ROOST_EAGAIN:
		return "try again";
	case ROOST_EINVAL:
		return "invalid argument";
	case ROOST_ENOTFOUND:
		return "not found";
	case ROOST_EEXISTS:
		return "already exists";
	case ROOST_EINUSE:
		return "in use";
	case ROOST_EOVERQUOTA:
		return "over quota";
	case ROOST_EQUOTATOOBIG:
		return "larger than the quota";
	case ROOST_ETOOBIG:
		return "too big";
	case ROOST_ETEMP:
		return "temporary failure";
	case ROOST_EIO:
		return "I/O error";
	case ROOST_EPERM:
		return "not permitted";
	case ROOST_ENOACCESS:
		return "no access right";
	case ROOST_EAUTH:
		return "authentication failed";
	case ROOST_ENOTSUP:
		return "not supported";
	case ROOST_ECLOSED:
		return "connection closed";
	case ROOST_ETIMEOUT:
		return "timed out";
	case ROOST_ECANCELED:
		return "cancelled";
	case ROOST_ECONFIG:
		return "configuration error";
	case ROOST_EPROTO:
		return "protocol error";
	}
	return "unknown error";
}
