// Redoc's sidebar footer always loads the Redocly logo from Redocly's CDN. Assay's pages load
// nothing from elsewhere (the Content-Security-Policy refuses it, and the browser would log a
// console error on every visit), so that one image gets an empty data: URL instead; Redoc
// hides an image that fails to load, as it does when the CDN is unreachable.
(function () {
  "use strict";
  const CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg";
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (name === "src" && value === CDN_LOGO && this instanceof HTMLImageElement) {
      value = "data:,";
    }
    return setAttribute.call(this, name, value);
  };
  const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    configurable: true,
    enumerable: src.enumerable,
    get: src.get,
    set: function (value) {
      src.set.call(this, value === CDN_LOGO ? "data:," : value);
    },
  });
})();
