/* provider.c - choose the implementation for a model: "mock" is built in, every
 * other name goes to the OpenAI-compatible provider (provider_openai.c). */
#include "provider.h"
#include "config.h"
#include "err.h"

#include <stdio.h>
#include <string.h>

int
provider_model_check(const struct config *cfg, const char *model, char *err, size_t errlen)
{
	if (!strcmp(model, "mock")) {
		if (!cfg->provider_url[0] || cfg->mock)
			return 0;
		snprintf(err, errlen, "model \"mock\" is not available here: a provider is "
		    "configured (TETHER_MOCK=1 offers it for tests and demos)");
		return -1;
	}
	if (!cfg->provider_url[0]) {
		snprintf(err, errlen, "model \"%s\" is not available: no provider is configured "
		    "(TETHER_PROVIDER_URL); use \"mock\"", model);
		return -1;
	}
	return provider_openai_model_check(cfg, model, err, errlen);
}

const char *
provider_default_model(const struct config *cfg)
{
	if (cfg->provider_url[0] && cfg->provider_model[0])
		return cfg->provider_model;
	return "mock";
}

int
provider_start(const struct provider_req *req, struct provider_call **out, char *err,
    size_t errlen)
{
	const struct provider_ops *ops = &provider_mock_ops;

	if (strcmp(req->model, "mock") != 0) {
		if (!req->cfg->provider_url[0]) {
			snprintf(err, errlen, "model \"%s\" needs a provider and none is configured",
			    req->model);
			return TE_PROVIDER;
		}
		ops = &provider_openai_ops;
	}
	return ops->start(req, out, err, errlen);
}

int
provider_next(struct provider_call *c, struct buf *chunk, int *eof, char *err, size_t errlen)
{
	return ((struct provider_call_base *)c)->ops->next(c, chunk, eof, err, errlen);
}

void
provider_cancel(struct provider_call *c)
{
	if (c)
		((struct provider_call_base *)c)->ops->cancel(c);
}

const char *
provider_usage(struct provider_call *c)
{
	return ((struct provider_call_base *)c)->ops->usage(c);
}

const struct toolcalls *
provider_tool_calls(struct provider_call *c)
{
	const struct provider_ops *ops = ((struct provider_call_base *)c)->ops;

	return ops->tool_calls ? ops->tool_calls(c) : NULL;
}

void
provider_free(struct provider_call *c)
{
	if (c)
		((struct provider_call_base *)c)->ops->free(c);
}
