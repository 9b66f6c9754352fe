// The GraphiQL page of a LineageHub server: queries go to the page's own URL (/graphql) as
// POST application/json, the only way the hub takes a mutation.
(function () {
  "use strict";
  var url = window.location.href.split("?")[0].split("#")[0];
  var parameters = new URLSearchParams(window.location.search);

  function remember(name, value) {
    if (value) {
      parameters.set(name, value);
    } else {
      parameters.delete(name);
    }
    var search = parameters.toString();
    history.replaceState(null, "", search ? "?" + search : window.location.pathname);
  }

  var fetcher = GraphiQL.createFetcher({ url: url });
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: "# LineageHub: press the play button (Ctrl-Enter) to run\n{\n  runs(first: 5) {\n    edges { node { id name status } }\n  }\n}\n",
      query: parameters.get("query") || undefined,
      variables: parameters.get("variables") || undefined,
      onEditQuery: function (query) { remember("query", query); },
      onEditVariables: function (variables) { remember("variables", variables); },
      defaultEditorToolsVisibility: true,
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    })
  );
})();
