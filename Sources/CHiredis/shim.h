#ifndef MYIM_CHIREDIS_SHIM_H
#define MYIM_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
